#!/usr/bin/env python3
"""Stable Diffusion 1.5's networks on the CPU, Microsoft.ML.Diffusion against diffusers v0.21.4, alternately.

    python3 benchmarks/sd_lockstep.py [--rounds 2] [--repeats 1] [--components unet,text,vae] [--threads 2]
        [--dtypes float32,bfloat16] [--size sd15|tiny] [--out benchmarks/results]

Each round runs, for each component, one fresh process per side: ours (the C# benchmark's --sd-components
--sd-component C, once per --dtypes entry) and diffusers_sd_components.py (float32), the order alternating from
component to component and round to round, so a change in the machine's load hits both sides alike. Each process
builds the network with random weights, warms up once and times --repeats runs (median); its peak RSS (VmHWM /
ru_maxrss) is that component's alone. Both sides get --threads torch threads, OPENBLAS_NUM_THREADS=1 and
OMP_NUM_THREADS=--threads, as benchmarks/lockstep.py runs its servers. The report gives, per component, the median
over rounds of each side's seconds, the median of the per-round ratios (ours / diffusers) with their range, process
CPU seconds (steadier than the wall clock on a shared machine) and peak RSS. Writes OUT/sd-lockstep.json and
OUT/sd-lockstep.md, prints the Markdown. Needs the C# benchmark built
(dotnet build benchmarks/Microsoft.ML.Diffusion.Benchmarks -c Release), /usr/bin/python3 with torch, diffusers v0.21.4's
src (--diffusers) and a checkout of openai/CLIP (--clip).

The SD 1.5 sizes take about 22 CPU-seconds per UNet step and 26 per VAE decode (float32, 2 threads of a Zen 4 EPYC):
--rounds 1 --repeats 1 --dtypes float32,bfloat16 takes about 4 minutes on a quiet machine; --size tiny runs in seconds (the test uses it).
"""
import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPONENTS = {"unet": "guided denoising step (UNet, batch 2)", "text": "text encoding (CLIP, 2×77 tokens)",
              "vae": "VAE decode (1×4×64×64)"}


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run(argv, env, what):
    started = time.time()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {what} failed ({done.returncode}): {' '.join(map(shlex.quote, argv))}\n{done.stderr[-4000:]}")
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        raise SystemExit(f"error: {what} printed {len(lines)} JSON lines, not 1:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(lines[0])
    result["process_seconds"] = round(time.time() - started, 1)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="processes per side and component (default 2)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per process after its warm-up (default 1)")
    p.add_argument("--components", default="unet,text,vae")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtypes", default="float32", help="our side's precisions, comma-separated (float32, bfloat16, float16; default float32)")
    p.add_argument("--size", choices=["sd15", "tiny"], default="sd15")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"))
    p.add_argument("--diffusers", default="/tmp/diffusers/src", help="diffusers v0.21.4's src folder")
    p.add_argument("--clip", default="/tmp/clip", help="a checkout of github.com/openai/CLIP")
    p.add_argument("--csharp", default=None, help="command that starts the C# benchmark (default: its Release build's apphost)")
    a = p.parse_args()
    if a.rounds < 1 or a.repeats < 1 or a.threads < 1:
        p.error("--rounds, --repeats and --threads need positive whole numbers")
    components = [c.strip() for c in a.components.split(",") if c.strip()]
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()]
    for c in components:
        if c not in COMPONENTS:
            p.error(f"unknown component {c}; known: {', '.join(COMPONENTS)}")
    for d in dtypes:
        if d not in ("float32", "bfloat16", "float16"):
            p.error(f"unknown precision {d}; known: float32, bfloat16, float16")
    if "float32" not in dtypes:
        dtypes.insert(0, "float32")
    log = lambda m: print(m, file=sys.stderr, flush=True)

    csharp = shlex.split(a.csharp) if a.csharp else [
        os.path.join(ROOT, "benchmarks", "Microsoft.ML.Diffusion.Benchmarks", "bin", "Release", "net10.0", "Microsoft.ML.Diffusion.Benchmarks")]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(a.threads), MLDIFFUSION_THREADS=str(a.threads))
    ours_cmd = lambda c, d: csharp + ["--sd-components", "--sd-component", c, "--sd-dtype", d, "--sd-size", a.size,
                                      "--repeats", str(a.repeats), "--threads", str(a.threads)]
    theirs_cmd = lambda c: ["/usr/bin/python3", "benchmarks/diffusers_sd_components.py", "--diffusers", a.diffusers, "--clip", a.clip,
                            "--component", c, "--size", a.size, "--repeats", str(a.repeats), "--threads", str(a.threads)]
    sides = [f"ours {d}" for d in dtypes] + ["diffusers"]
    shown = lambda argv: " ".join(shlex.quote(os.path.relpath(x, ROOT) if x.startswith(ROOT + os.sep) else x) for x in argv)
    commands = {f"ours {d}": shown(ours_cmd("C", d)) for d in dtypes}
    commands["diffusers"] = shown(theirs_cmd("C"))
    started, load_before = time.time(), load_average()
    results = {c: {s: [] for s in sides} for c in components}
    k = 0
    for r in range(a.rounds):
        for c in components:
            order = sides if k % 2 == 0 else sides[::-1]
            k += 1
            for side in order:
                argv = theirs_cmd(c) if side == "diffusers" else ours_cmd(c, side.split()[1])
                x = run(argv, env, f"{side} {c}")
                x["load_average"] = load_average()
                results[c][side].append(x)
                log(f"round {r + 1}/{a.rounds} {c} {side}: {x['median_seconds']:.3f} s (CPU {x['median_cpu_seconds']:.3f} s), "
                    f"peak RSS {x['peak_rss_mb']:.0f} MiB, {x['parameters']:,} parameters; load {x['load_average']}")
        if r == 0:
            for c in components:
                counts = {s: results[c][s][0]["parameters"] for s in sides}
                if len(set(counts.values())) != 1:
                    raise SystemExit(f"error: the {c} networks differ in size: {counts}")

    rows = []
    for c in components:
        theirs = results[c]["diffusers"]
        row = dict(component=c, measure=COMPONENTS[c], parameters=theirs[0]["parameters"], sides={})
        for side in sides:
            runs = results[c][side]
            row["sides"][side] = dict(
                seconds=statistics.median(x["median_seconds"] for x in runs),
                cpu_seconds=statistics.median(x["median_cpu_seconds"] for x in runs),
                peak_rss_mb=max(x["peak_rss_mb"] for x in runs),
                ratios=[x["median_seconds"] / t["median_seconds"] for x, t in zip(runs, theirs)],
                runs=runs)
        rows.append(row)
    load_after = load_average()
    doc = dict(generated=datetime.datetime.now(datetime.timezone.utc).isoformat(), rounds=a.rounds, repeats=a.repeats, threads=a.threads,
               size=a.size, commands=commands, load_average_before=load_before, load_average_after=load_after,
               seconds=round(time.time() - started, 1), rows=rows)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "sd-lockstep.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    md = [f"### Stable Diffusion 1.5 networks on the CPU, {doc['generated'][:19]}Z ({a.size}, {a.rounds} rounds × {a.repeats} timed runs, "
          f"{a.threads} threads each, {doc['seconds']:.0f} s; load average {load_before} before, {load_after} after)",
          "",
          "Seconds: median over rounds of each process's median; ratio: median of the per-round ratios ours / diffusers (range); "
          "CPU: process user + system seconds of one run; peak RSS: the largest over the rounds (one component per process).",
          ""]
    half = [d for d in dtypes if d != "float32"]
    head = "| component | ours (s) | diffusers (s) | ratio | CPU ours / diffusers (s) | peak RSS ours / diffusers (MiB) |"
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |"
    for d in half:
        head += f" ours {d} (s, × float32) | peak RSS {d} (MiB) |"
        rule += " ---: | ---: |"
    md += [head, rule]
    for row in rows:
        o, t = row["sides"]["ours float32"], row["sides"]["diffusers"]
        ratio = o["ratios"]
        line = (f"| {row['measure']} | {o['seconds']:.3f} | {t['seconds']:.3f} | **{statistics.median(ratio):.2f}×** "
                f"({min(ratio):.2f}–{max(ratio):.2f}) | {o['cpu_seconds']:.2f} / {t['cpu_seconds']:.2f} | "
                f"{o['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} ({o['peak_rss_mb'] / t['peak_rss_mb']:.2f}×) |")
        for d in half:
            h = row["sides"][f"ours {d}"]
            line += f" {h['seconds']:.3f} ({h['seconds'] / o['seconds']:.2f}×) | {h['peak_rss_mb']:.0f} |"
        md.append(line)
    md += ["", "Commands (C = unet, text or vae; OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=MLDIFFUSION_THREADS="
           f"{a.threads} for both):", ""]
    md += [f"- {side}: `{cmd}`" for side, cmd in commands.items()]
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "sd-lockstep.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
