#!/usr/bin/env python3
"""Puts the TorchSharp and PyTorch benchmark results side by side.

    python3 benchmarks/compare.py RESULTS_DIR

When RESULTS_DIR holds round-1/, round-2/, … (run.sh --rounds N: the two sides take turns, so a machine
whose speed drifts slows both alike), it first merges them into RESULTS_DIR/torchsharp.json and
pytorch.json, every timing being the median over the rounds. Then it
reads RESULTS_DIR/torchsharp.json and RESULTS_DIR/pytorch.json (and the *-ops.json and lockstep.json files when present),
writes RESULTS_DIR/latest.json and RESULTS_DIR/latest.md, and prints the Markdown. Ratio = ours / PyTorch
(above 1 means Microsoft.ML.Diffusion is slower). Standard library only.
"""
import datetime
import json
import os
import sys

SAMPLERS = ["DDPM 1000", "DDIM 50", "DPM-Solver++ 20"]
PHASES = [("data_s", "data"), ("forward_s", "forward"), ("backward_s", "backward"), ("clip_s", "clip"),
          ("optimizer_s", "AdamW"), ("ema_s", "EMA"), ("other_s", "other"), ("total_s", "total"),
          ("forward_inference_s", "inference fwd")]


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def merge(docs):
    """The rounds' results as one: floats become their median over the rounds, everything else is round 1's."""
    first = docs[0]
    if isinstance(first, dict):
        return {k: merge([d[k] for d in docs]) if all(isinstance(d, dict) and k in d for d in docs) else first[k] for k in first}
    if isinstance(first, list):
        if all(isinstance(d, list) and len(d) == len(first) for d in docs):
            return [merge([d[i] for d in docs]) for i in range(len(first))]
        return first
    if isinstance(first, float) and all(isinstance(d, (int, float)) and not isinstance(d, bool) for d in docs):
        return median(docs)
    return first


def merge_rounds(out):
    """Merges out/round-*/ into out/; returns the per-round documents for each side (empty without rounds)."""
    rounds = sorted((d for d in os.listdir(out) if d.startswith("round-") and os.path.isdir(os.path.join(out, d))),
                    key=lambda d: int(d.split("-", 1)[1]))
    per_side = {}
    for side in ("torchsharp", "pytorch"):
        docs = [load(os.path.join(out, r, side + ".json")) for r in rounds]
        docs = [d for d in docs if d is not None]
        if docs:
            merged = merge(docs)
            merged["rounds"] = len(docs)
            with open(os.path.join(out, side + ".json"), "w") as f:
                json.dump(merged, f, indent=2)
                f.write("\n")
        per_side[side] = docs
    return per_side


def per_round_ratios(rounds):
    ours, ref = rounds.get("torchsharp", []), rounds.get("pytorch", [])
    if len(ours) < 2 or len(ours) != len(ref):
        return []
    lines = []
    for c in ours[0]["configs"]:
        parts = []
        for k, (o, r) in enumerate(zip(ours, ref), 1):
            co = next(x for x in o["configs"] if x["name"] == c["name"])
            cr = next((x for x in r["configs"] if x["name"] == c["name"]), None)
            if cr is None:
                continue
            rs = [ratio(co["train"]["step"]["median_s"], cr["train"]["step"]["median_s"])]
            for name in SAMPLERS:
                so = next(x for x in co["samplers"] if x["name"] == name)
                sr = next(x for x in cr["samplers"] if x["name"] == name)
                rs.append(ratio(so["s_per_image"], sr["s_per_image"]))
            parts.append(f"round {k}: " + ", ".join(fmt_ratio(x) for x in rs))
        lines.append(f"{c['name']}: " + "; ".join(parts))
    return lines


def ratio(a, b):
    try:
        return a / b if b else None
    except TypeError:
        return None


def fmt(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}×"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("benchmarks", "results")
    rounds = merge_rounds(out)
    ours, ref = load(os.path.join(out, "torchsharp.json")), load(os.path.join(out, "pytorch.json"))
    if ours is None:
        sys.exit(f"error: {out}/torchsharp.json is missing")
    ops_ours, ops_ref = load(os.path.join(out, "torchsharp-ops.json")), load(os.path.join(out, "pytorch-ops.json"))
    lockstep = load(os.path.join(out, "lockstep.json"))
    ref_configs = {c["name"]: c for c in (ref or {}).get("configs", [])}

    rows = []
    for c in ours["configs"]:
        r = ref_configs.get(c["name"])
        row = dict(config=c["name"], description=c["description"], params_torchsharp=c["params"],
                   params_pytorch=r["params"] if r else None,
                   params_match=(r is not None and r["params"] == c["params"]),
                   train_batch=c["train"]["batch"],
                   train_step_s=dict(ours=c["train"]["step"]["median_s"],
                                     pytorch=r["train"]["step"]["median_s"] if r else None),
                   samplers={}, peak_rss_mb=dict(ours=c["peak_rss_mb"], pytorch=r["peak_rss_mb"] if r else None),
                   breakdown={})
        row["train_step_s"]["ratio"] = ratio(row["train_step_s"]["ours"], row["train_step_s"]["pytorch"])
        for name in SAMPLERS:
            so = next(s for s in c["samplers"] if s["name"] == name)
            sr = next((s for s in r["samplers"] if s["name"] == name), None) if r else None
            row["samplers"][name] = dict(ours_s_per_image=so["s_per_image"], pytorch_s_per_image=sr["s_per_image"] if sr else None,
                                         ratio=ratio(so["s_per_image"], sr["s_per_image"] if sr else None),
                                         batch=so["batch"], extrapolated=so["extrapolated"] or bool(sr and sr["extrapolated"]),
                                         timed_steps=so["timed_steps"], steps=so["steps"])
        bo, br = c.get("breakdown"), (r or {}).get("breakdown")
        if bo:
            for key, _ in PHASES:
                row["breakdown"][key] = dict(ours=bo.get(key), pytorch=br.get(key) if br else None,
                                             ratio=ratio(bo.get(key), br.get(key) if br else None))
        rows.append(row)

    latest = dict(generated=datetime.datetime.now(datetime.timezone.utc).isoformat(), mode=ours.get("mode"),
                  caveat="Timings on a shared 2-core CPU machine; other processes may have been running, treat as noisy.",
                  versions=dict(torchsharp=ours["versions"], pytorch=(ref or {}).get("versions")),
                  comparison=rows, torchsharp=ours, pytorch=ref,
                  ops=dict(torchsharp=ops_ours, pytorch=ops_ref) if ops_ours or ops_ref else None,
                  lockstep=lockstep)
    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(latest, f, indent=2)
        f.write("\n")

    vo, vr = ours["versions"], (ref or {}).get("versions")
    md = []
    md.append(f"## Microsoft.ML.Diffusion vs PyTorch — {ours.get('mode')} run, {latest['generated'][:19]}Z")
    md.append("")
    md.append(f"- **ours**: TorchSharp {vo['framework_version']}, {vo['libtorch']}, {vo['runtime']}, torch threads {vo['torch_threads']}")
    if vr:
        md.append(f"- **PyTorch**: torch {vr['framework_version']} ({vr['libtorch']}), {vr['runtime']}, torch threads {vr['torch_threads']}, "
                  f"{vr['note'].split(';')[0]}")
    md.append(f"- CPU: {vo['cpu']} × {vo['logical_cores']} logical cores. {latest['caveat']}")
    md.append("")
    md.append("Ratio = ours / PyTorch (> 1: we are slower). Train step: median seconds per `TrainStep` after warm-up. "
              "Samplers: seconds per generated image (one run over the batch ÷ batch size).")
    md.append("")
    md.append("| config | params (ours / PyTorch) | train step s (ours / PyTorch / ratio) | "
              + " | ".join(f"{s} s/img (ours / PyTorch / ratio)" for s in SAMPLERS) + " | peak RSS MiB (ours / PyTorch) |")
    md.append("| --- | --- | --- | " + " | ".join("---" for _ in SAMPLERS) + " | --- |")
    notes = []
    for row in rows:
        pc = f"{row['params_torchsharp']:,} / " + (f"{row['params_pytorch']:,}" if row["params_pytorch"] is not None else "n/a")
        if not row["params_match"]:
            pc += " **MISMATCH**"
        t = row["train_step_s"]
        cells = []
        for s in SAMPLERS:
            x = row["samplers"][s]
            star = "*" if x["extrapolated"] else ""
            cells.append(f"{fmt(x['ours_s_per_image'])}{star} / {fmt(x['pytorch_s_per_image'])}{star} / **{fmt_ratio(x['ratio'])}**")
            if x["extrapolated"]:
                notes.append(f"{row['config']} {s}: first {x['timed_steps']} of {x['steps']} steps timed (batch {x['batch']}), extrapolated to {x['steps']}.")
        rss = row["peak_rss_mb"]
        md.append(f"| {row['config']} ({row['description']}, batch {row['train_batch']}) | {pc} | {fmt(t['ours'], 3)} / {fmt(t['pytorch'], 3)} / **{fmt_ratio(t['ratio'])}** | "
                  + " | ".join(cells) + f" | {fmt(rss['ours'], 0)} / {fmt(rss['pytorch'], 0)} |")
    md.append("")
    for n in notes:
        md.append(f"\\* {n}  ")
    spread = per_round_ratios(rounds)
    if spread:
        md.append("")
        md.append(f"{len(rounds['torchsharp'])} rounds, the two sides taking turns; each number above is the median over the rounds. "
                  "Ratio in each round (train step; DDPM 1000, DDIM 50, DPM-Solver++ 20 per image):")
        md.append("")
        for line in spread:
            md.append(f"- {line}")
    if lockstep:
        md.append("")
        md.append(f"### Lockstep: the two programs taking turns, measurement by measurement ({lockstep['pairs']} pairs per row)")
        md.append("")
        md.append("The ratios to trust on a machine whose speed drifts: each is the median of per-pair ratios, the two "
                  "measurements of a pair seconds apart (benchmarks/lockstep.py). Medians in seconds (samplers: per image).")
        md.append("")
        md.append("| config | measure | ours | PyTorch | ratio (min–max) |")
        md.append("| --- | --- | ---: | ---: | ---: |")
        for c in lockstep["configs"]:
            for r in c["rows"]:
                md.append(f"| {c['config']} | {r['measure']} | {fmt(r['ours_median'])} | {fmt(r['pytorch_median'])} | "
                          f"**{fmt_ratio(r['ratio_median'])}** ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) |")
    md.append("")
    md.append("### Where the training step goes (median s per step, ours / PyTorch)")
    md.append("")
    md.append("| config | " + " | ".join(label for _, label in PHASES) + " |")
    md.append("| --- | " + " | ".join("---:" for _ in PHASES) + " |")
    for row in rows:
        if not row["breakdown"]:
            continue
        md.append(f"| {row['config']} | " + " | ".join(
            f"{fmt(row['breakdown'][k]['ours'])} / {fmt(row['breakdown'][k]['pytorch'])} ({fmt_ratio(row['breakdown'][k]['ratio'])})"
            for k, _ in PHASES) + " |")
    if ops_ours and ops_ref:
        md.append("")
        md.append("### Single ops on the bench shapes (batch 64; median ms, ours / PyTorch)")
        md.append("")
        md.append("| op | forward | forward+backward |")
        md.append("| --- | ---: | ---: |")
        ref_ops = {o["name"]: o for o in ops_ref["ops"]}
        for o in ops_ours["ops"]:
            p = ref_ops.get(o["name"])
            if not p:
                continue
            md.append(f"| {o['name']} | {o['forward_s'] * 1e3:.2f} / {p['forward_s'] * 1e3:.2f} ({fmt_ratio(ratio(o['forward_s'], p['forward_s']))}) | "
                      f"{o['forward_backward_s'] * 1e3:.2f} / {p['forward_backward_s'] * 1e3:.2f} ({fmt_ratio(ratio(o['forward_backward_s'], p['forward_backward_s']))}) |")
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
