"""How long listing cuts and exporting every TRN takes, per network. Prints JSON.

python bench/cuts_export.py [--models mobilenet_v2,resnet18,efficientnet_b0] [--input-size 224]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from netcut import models
from netcut.cuts import analyse
from netcut.export import export_onnx
from netcut.trn import build_trn


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mobilenet_v2,resnet18,efficientnet_b0,googlenet")
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args(argv)
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = models.build(name)
            t0 = time.perf_counter()
            a = analyse(model, name, args.input_size)
            list_s = time.perf_counter() - t0
            per_trn = []
            errors = []
            for cut in [*a.cuts, None]:
                t0 = time.perf_counter()
                result = export_onnx(build_trn(a, cut, num_classes=10), Path(tmp) / "m.onnx", a.input_shape)
                per_trn.append(time.perf_counter() - t0)
                errors.append(result.relative_error)
            report.append(
                {
                    "model": name,
                    "input_size": args.input_size,
                    "cuts": len(a.cuts),
                    "list_cuts_s": round(list_s, 3),
                    "export_all_s": round(sum(per_trn), 3),
                    "export_median_s": round(statistics.median(per_trn), 3),
                    "export_max_s": round(max(per_trn), 3),
                    "max_relative_error": max(errors),
                }
            )
            print(json.dumps(report[-1]), file=sys.stderr)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
