"""bench_predict.py's result tables: rates as ratios against the classic loop (a), the model
alone (c) and, for OpenVINO, its own bare throughput."""

from __future__ import annotations


def report(results: dict, agree: dict) -> None:
    report_openvino({n: r for n, r in results.items() if n.startswith("ov-")}, results)
    results = {n: r for n, r in results.items() if not n.startswith("ov-")}
    if "classic" not in results:
        print("agreement: " + ", ".join(f"{k}={v:.6g}" for k, v in agree.items()))
        return
    timed = {n: r for n, r in results.items() if "seconds" in r and n != "tflite"}
    rate = {n: r["images"] / r["seconds"] for n, r in timed.items()}
    per_cpu = {n: r["images"] / r["cpu_seconds"] for n, r in timed.items() if "cpu_seconds" in r}
    a, a_cpu = rate["classic"], per_cpu["classic"]
    print(
        f"{'variant':<14} {'images':>6} {'img/s':>6} {'x (a)':>6} {'x (c)':>6}"
        f" {'img/cpu-s':>9} {'x (a)':>6} {'x (c)':>6} {'peak RSS':>9}"
    )
    for name, r in results.items():
        ceiling = "model-bf16" if "bf16" in name else "model-fp32"
        cols = ""
        for table, base in ((rate, a), (per_cpu, a_cpu)):
            v = table.get(name)
            width = 9 if table is per_cpu else 6
            cols += (
                f" {v:{width}.2f} {v / base:6.2f} {v / table[ceiling]:6.2f}"
                if v
                else f" {'':{width}} {'':6} {'':6}"
            )
        print(f"{name:<14} {r['images']:>6}{cols} {r['peak_rss_mb']:>6.0f} MB")
    tfl = results.get("tflite", {"top1": 0, "top5": 0, "images": 0, "seconds": 1})
    print(
        f"TFLite MobileNetV2 (uint8): top-1 {tfl['top1']}/{tfl['images']}, top-5 {tfl['top5']}/"
        f"{tfl['images']}, {tfl['images'] / tfl['seconds']:.1f} img/s (incl. first-batch setup)"
    )
    if "flow-fp32" in results:
        f = results["flow-fp32"]
        print(f"flow: {f['seconds']:.1f} s in the flow, {f['wall_with_server']:.1f} s with server")
    print("agreement: " + ", ".join(f"{k}={v:.6g}" for k, v in agree.items()))


def report_openvino(ov: dict, results: dict) -> None:
    """OpenVINO rows: img/s, against Keras fp32 on preloaded batches (c), against OpenVINO's own
    bare throughput at the same precision (the flow's target: >= 0.85), and per CPU-second."""
    if not ov:
        return
    keras_c = results.get("model-fp32")
    print(f"{'OpenVINO':<17} {'images':>6} {'img/s':>6} {'x keras(c)':>10} {'x own bare':>10}"
          f" {'img/cpu-s':>9} {'x own bare':>10} {'peak RSS':>9}")  # fmt: skip
    for name, r in ov.items():
        bare = ov.get("ov-model-" + name.rsplit("-", 1)[1])
        v, c = r["images"] / r["seconds"], r["images"] / r["cpu_seconds"]
        vs_keras = f"{v / (keras_c['images'] / keras_c['seconds']):10.2f}" if keras_c else " " * 10
        own = f"{v / (bare['images'] / bare['seconds']):10.2f}" if bare else " " * 10
        own_cpu = f"{c / (bare['images'] / bare['cpu_seconds']):10.2f}" if bare else " " * 10
        print(f"{name:<17} {r['images']:>6} {v:6.1f} {vs_keras} {own} {c:9.1f} {own_cpu}"
              f" {r['peak_rss_mb']:>6.0f} MB")  # fmt: skip
        if "first_seconds" in r:
            print(
                f"  {name}: first run in the process {r['first_seconds']:.1f} s (IR load + compile)"
            )
