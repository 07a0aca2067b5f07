"""How long listing cuts and exporting every TRN takes, per network and per cut. Prints JSON.

python bench/cuts_export.py [--models mobilenet_v2,resnet18,timm/efficientnet_lite0] [--input-size 224]

By default: four torchvision networks, then (where timm is installed) timm's edge set and two networks
that fuse for deployment (timm/mobileone_s0, timm/fastvit_t8), built and fused as every command builds them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from netcut import models, reparam
from netcut.cuts import analyse
from netcut_host.choices import TIMM_EDGE_MODELS, default_models
from netcut.export import export_onnx
from netcut.trn import build_trn


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    timm = [m for m in default_models() if m in TIMM_EDGE_MODELS]
    fusing = ["timm/mobileone_s0", "timm/fastvit_t8"] if timm else []
    parser.add_argument(
        "--models", default=",".join(["mobilenet_v2", "resnet18", "efficientnet_b0", "googlenet"] + timm + fusing)
    )
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args(argv)
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            t0 = time.perf_counter()
            model = models.build(name)  # the deploy form: fused where blocks fuse
            build_s = time.perf_counter() - t0
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
            fuses = reparam.needs_fusing(models.build(name, form="train"))
            report.append(
                {
                    "model": name,
                    "input_size": args.input_size,
                    "cuts": len(a.cuts),
                    "fused": fuses,
                    "build_s": round(build_s, 3),
                    "list_cuts_s": round(list_s, 3),
                    "export_all_s": round(sum(per_trn), 3),
                    "export_median_s": round(statistics.median(per_trn), 3),
                    "export_max_s": round(max(per_trn), 3),
                    "max_relative_error": max(errors),
                    "export_s_per_cut": {
                        (c.name if c else "full"): round(t, 3) for c, t in zip([*a.cuts, None], per_trn)
                    },
                }
            )
            print(json.dumps(report[-1]), file=sys.stderr)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
