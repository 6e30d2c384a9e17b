"""Copy a `gtmm reproduce` result into docs/results: its report, its figures reduced to a palette
(sample grids 64 colours; metrics plots 256, since 64 merged line colours there: in the
perfect-recall-20 plot the DNC's purple became the VRNN's grey), and every replica's
evaluation.json as evaluations/MODEL-replica-R.json, the files scripts/claims.py reads.

Usage: python scripts/publish_reproduction.py runs/parity-recall-15 docs/results/cpu/parity-recall-15
"""

import shutil
import sys
from pathlib import Path

from PIL import Image


def publish(run: Path, dest: Path) -> None:
    if not (run / "report.md").exists():
        sys.exit(f"publish_reproduction: {run} has no report.md; run `gtmm reproduce ... --out {run}` to the end first")
    (dest / "evaluations").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "report.md", dest / "report.md")
    for png in run.glob("*.png"):
        colours = 256 if png.name.endswith("-metrics.png") else 64
        Image.open(png).convert("RGB").quantize(colors=colours).save(dest / png.name, optimize=True)
    for ev in sorted(run.glob("*/replica-*/evaluation.json")):
        shutil.copyfile(ev, dest / "evaluations" / f"{ev.parent.parent.name}-{ev.parent.name}.json")
    print(f"{dest}: report, {len(list(dest.glob('*.png')))} figures, "
          f"{len(list((dest / 'evaluations').glob('*.json')))} evaluations")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    publish(Path(sys.argv[1]), Path(sys.argv[2]))
