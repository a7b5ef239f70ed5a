#!/usr/bin/env python3
"""Times Microsoft.ML.Diffusion and the PyTorch reference in lockstep: one measurement each, alternately.

    python3 benchmarks/lockstep.py [--pairs N] [--configs bench,rgb32] [--threads N] [--out DIR] [--quick]

Why: this machine's CPU speed changes by up to 2x for minutes at a time whatever runs on it (a plain
arithmetic loop in C shows it), so two benchmark runs a few minutes apart do not compare. Here both
programs stay alive side by side (benchmark --serve and ddpm_reference.py --serve), each idle while the
other works, and every measurement of one is paired with the same measurement of the other, seconds
apart, the order alternating. The ratio of each pair is immune to drift slower than a pair; the report
gives the median ratio over the pairs and their range.

Measured per pair: a training step (2 steps), an inference forward of the EMA network (3 forwards, t = 500),
DDPM 1000 (first 20 steps, extrapolated), DDIM 50 and DPM-Solver++ 20 (whole runs). Samplers are reported
as seconds per image = seconds per step x steps / batch. Writes DIR/lockstep.json and DIR/lockstep.md and
prints the Markdown. Before timing a configuration, the two sides must report the same parameter count and the
same output of one forward of the network with probe weights on a probe input (network_difference), so a
change to one network that the other lacks stops the comparison. Needs the C# benchmark built (benchmarks/run.sh does it) and /usr/bin/python3 with torch.
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
BATCH = {"bench": 64, "rgb32": 64}
# (label, request, steps a run takes, what one answer means)
MEASURES = [
    ("train step", "train 2", None),
    ("inference forward", "forward 3", None),
    ("DDPM 1000", "sample ddpm 1000 20", 1000),
    ("DDIM 50", "sample ddim 50 0", 50),
    ("DPM-Solver++ 20", "sample dpm 20 0", 20),
]
QUICK = [
    ("train step", "train 1", None),
    ("inference forward", "forward 1", None),
    ("DDPM 1000", "sample ddpm 1000 2", 1000),
    ("DDIM 50", "sample ddim 50 2", 50),
    ("DPM-Solver++ 20", "sample dpm 20 2", 20),
]


class Server:
    def __init__(self, name, argv, env=None):
        self.name = name
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, bufsize=1)

    def ask(self, request):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f"error: {self.name} exited while answering '{request}' (exit code {self.proc.wait()})")
        answer = answer.strip()
        if answer.startswith("error"):
            raise SystemExit(f"error: {self.name} could not answer '{request}': {answer}")
        return answer

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


PROBE_TOLERANCE = 1e-4   # relative to the probe output's mean |y|; libtorch 2.10 and torch 1.13 differ by about 3e-8


def network_difference(ours, theirs):
    """None if the two 'ready PARAMETERS MEAN-ABS PROJECTION' answers describe the same network, else what differs.

    The last two numbers are the statistics of one forward of a fresh network with every parameter set by a rule
    of its shape, on a fixed input (NetworkProbe.cs, network_probe in ddpm_reference.py): equal up to float
    rounding only if both sides compute the same function. The parameter counts must be equal too (both sides
    count the output projection at its natural shape, whatever it computes at run time)."""
    o, t = ours.split(), theirs.split()
    if len(o) != 4 or len(t) != 4:
        return "a side did not report the probe output (an older build?)" if o[:2] != t[:2] else \
            "a side did not report the probe output (an older build?), though the parameter counts agree"
    if o[1] != t[1]:
        return f"{int(o[1]):,} vs {int(t[1]):,} parameters"
    (ao, po), (at, pt) = (float(o[2]), float(o[3])), (float(t[2]), float(t[3]))
    scale = max(abs(ao), abs(at), 1e-30)
    if abs(ao - at) > PROBE_TOLERANCE * scale or abs(po - pt) > PROBE_TOLERANCE * scale:
        return f"different outputs on the probe input (mean |y| {ao:.7g} vs {at:.7g}, projection {po:.7g} vs {pt:.7g})"
    return None


def median(v):
    return statistics.median(v) if v else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=5, help="measurements of each kind per side (default 5)")
    p.add_argument("--configs", default="bench,rgb32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=os.path.join("benchmarks", "results"))
    p.add_argument("--quick", action="store_true", help="a few sampling steps per measurement (smoke test)")
    p.add_argument("--train-warmup", type=int, help="training steps before the first measurement (default 3)")
    p.add_argument("--sample-batch", type=int, help="images per sampling run (default: the configuration's batch, 64)")
    p.add_argument("--bench-batch", type=int, help="training and sampling batch of bench (default 64)")
    p.add_argument("--rgb32-batch", type=int, help="training and sampling batch of rgb32 (default 64)")
    p.add_argument("--csharp", default=None, help="command that starts the C# server (default: dotnet run --no-build)")
    p.add_argument("--allow-different-networks", action="store_true",
                   help="time the two sides even if their networks differ (e.g. an older build of ours as --reference)")
    p.add_argument("--reference", default=None,
                   help="command that starts the other server instead of the PyTorch reference (to compare two settings of ours)")
    a = p.parse_args()
    if a.pairs < 1:
        p.error("--pairs needs a positive whole number")
    names = [c.strip() for c in a.configs.split(",") if c.strip()]
    for n in names:
        if n not in BATCH:
            p.error(f"unknown configuration {n}; known: {', '.join(BATCH)}")
    measures = QUICK if a.quick else MEASURES
    if a.bench_batch:
        BATCH["bench"] = a.bench_batch
    if a.rgb32_batch:
        BATCH["rgb32"] = a.rgb32_batch
    shared = []   # settings both servers get
    for flag, value in (("--train-warmup", a.train_warmup), ("--sample-batch", a.sample_batch), ("--bench-batch", a.bench_batch),
                        ("--rgb32-batch", a.rgb32_batch)):
        if value is not None:
            if value < 1:
                p.error(f"{flag} needs a positive whole number")
            shared += [flag, str(value)]
    log = lambda m: print(m, file=sys.stderr, flush=True)

    csharp = (shlex.split(a.csharp) if a.csharp else
              ["dotnet", "run", "--no-build", "--project", "benchmarks/Microsoft.ML.Diffusion.Benchmarks", "-c", "Release", "--"])
    ours = Server("Microsoft.ML.Diffusion", csharp + ["--serve", "--threads", str(a.threads)] + shared)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(a.threads))
    if a.reference:
        ref = Server("reference", shlex.split(a.reference) + ["--serve", "--threads", str(a.threads)] + shared, env)
    else:
        ref = Server("PyTorch", ["/usr/bin/python3", "benchmarks/pytorch/ddpm_reference.py", "--serve", "--threads", str(a.threads)] + shared, env)
    started = time.time()
    results = []
    try:
        for name in names:
            po, pr = ours.ask(f"setup {name}"), ref.ask(f"setup {name}")
            problem = network_difference(po, pr)
            if problem and not a.allow_different_networks:
                raise SystemExit(f"error: the two networks differ for {name}: {problem} ('{po}' vs '{pr}'); "
                                 "--allow-different-networks times them anyway")
            if problem:
                log(f"[{name}] warning: the two networks differ: {problem}; timing them anyway (--allow-different-networks)")
            else:
                log(f"[{name}] both ready ({po.split()[1]} parameters each, the same output on the probe input)")
            rows = []
            for label, request, steps in measures:
                rows.append(dict(measure=label, request=request, pairs=[]))
            for k in range(a.pairs):
                for i, (label, request, steps) in enumerate(measures):
                    first_ours = (k + i) % 2 == 0
                    order = [(ours, "ours"), (ref, "pytorch")] if first_ours else [(ref, "pytorch"), (ours, "ours")]
                    pair = {}
                    for server, side in order:
                        pair[side] = float(server.ask(request))
                    pair["first"] = "ours" if first_ours else "pytorch"
                    rows[i]["pairs"].append(pair)
                    log(f"[{name}] pair {k + 1}/{a.pairs} {label}: ours {pair['ours']:.4f} s, PyTorch {pair['pytorch']:.4f} s, "
                        f"ratio {pair['ours'] / pair['pytorch']:.2f}")
            for (label, request, steps), row in zip(measures, rows):
                scale = steps / (a.sample_batch or BATCH[name]) if steps else 1.0   # seconds per step -> seconds per image of a whole run
                o = [x["ours"] * scale for x in row["pairs"]]
                r = [x["pytorch"] * scale for x in row["pairs"]]
                ratios = [x["ours"] / x["pytorch"] for x in row["pairs"]]
                row.update(unit="s/image" if steps else "s", ours_median=median(o), pytorch_median=median(r),
                           ratio_median=median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))
            results.append(dict(config=name, parameters=int(po.split()[1]), ready=dict(ours=po, reference=pr), rows=rows))
    finally:
        ours.close()
        ref.close()

    doc = dict(generated=datetime.datetime.now(datetime.timezone.utc).isoformat(), pairs=a.pairs, threads=a.threads,
               ours=" ".join(csharp), reference=a.reference or "PyTorch (benchmarks/pytorch/ddpm_reference.py)",
               quick=a.quick, seconds=round(time.time() - started, 1), configs=results)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "lockstep.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    md = [f"### Lockstep comparison, {doc['generated'][:19]}Z ({a.pairs} pairs per cell, {a.threads} threads each, {doc['seconds']:.0f} s)",
          "",
          "Each cell: median over the pairs; ratio = median of the per-pair ratios ours / PyTorch (range in brackets).",
          "",
          "| config | measure | ours | PyTorch | ratio (min–max) |",
          "| --- | --- | ---: | ---: | ---: |"]
    for c in results:
        for row in c["rows"]:
            md.append(f"| {c['config']} | {row['measure']} ({row['unit']}) | {row['ours_median']:.4f} | {row['pytorch_median']:.4f} | "
                      f"**{row['ratio_median']:.2f}×** ({row['ratio_min']:.2f}–{row['ratio_max']:.2f}) |")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "lockstep.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
