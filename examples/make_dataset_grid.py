"""Render 8 images of the procedural data set with their panoptic ground truth into ``docs/synthetic_grid.png``.

Usage::

    python examples/make_dataset_grid.py [--output docs/synthetic_grid.png] [--seed 0] [--size 256]

The eight images are the validation images closest to difficulties 0, 1/7, ..., 1 among the first 64, so the grid
shows the whole range from one large object on plain stuff to many small, occluded, camouflaged ones.
"""

from __future__ import annotations

import argparse

import numpy as np

from modeling_ecom2f.data import SyntheticPanopticConfig, draw_panoptic_grid, render_synthetic_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="docs/synthetic_grid.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    config = SyntheticPanopticConfig(height=args.size, width=args.size, seed=args.seed)
    pool = [render_synthetic_sample(config=config, split="validation", index=i) for i in range(64)]
    chosen: list[int] = []
    for target in np.linspace(0.0, 1.0, 8):
        free = [i for i in range(len(pool)) if i not in chosen]
        chosen.append(min(free, key=lambda i: abs(pool[i].difficulty["difficulty"] - target)))
    chosen_samples = [pool[i] for i in chosen]
    samples = []
    for s in chosen_samples:
        d = s.difficulty
        caption = (
            f"{s.image_id}\nd={d['difficulty']:.2f}  things={d['num_things']}  "
            f"occl={d['occlusion_fraction']:.2f}{'  crowd' if d['has_crowd'] else ''}"
        )
        samples.append((s.image, s.panoptic_ids, s.segments_info, caption))
    draw_panoptic_grid(samples=samples, id2label=config.id2label, columns=4, output_path=args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
