"""Generate the toy COCO instances / COCO panoptic / ADE20K-style datasets (see ``upsample_plugin/toy_data.py``).

    python tools/make_toy_data.py                       # data/toy, seed 0, 64 train + 16 val images per set
    python tools/make_toy_data.py --out /tmp/toy --train 6 --val 3 --seed 1 --force

Deterministic from ``--seed``; a second run with the same parameters only checks ``<out>/meta.json`` and exits.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from upsample_plugin import toy_data  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='data/toy', help='output directory')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train', type=int, default=64, help='COCO train images')
    parser.add_argument('--val', type=int, default=16, help='COCO val images')
    parser.add_argument('--seg-train', type=int, default=None, help='ADE training images (None: as --train)')
    parser.add_argument('--seg-val', type=int, default=None, help='ADE validation images (None: as --val)')
    parser.add_argument('--min-size', type=int, default=160, help='smallest image side (px)')
    parser.add_argument('--max-size', type=int, default=256, help='largest image side (px)')
    parser.add_argument('--max-objects', type=int, default=8, help='most objects per image')
    parser.add_argument('--force', action='store_true', help='delete and regenerate an existing output')
    parser.add_argument('--check', action='store_true',
                        help='afterwards validate every split with upsample_plugin.data_checks')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    try:
        summary = toy_data.make_all(args.out, seed=args.seed, train=args.train, val=args.val,
                                    seg_train=args.seg_train, seg_val=args.seg_val, min_size=args.min_size,
                                    max_size=args.max_size, max_objects=args.max_objects, force=args.force)
    except (FileExistsError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(toy_data.format_summary(summary))
    if args.check:
        from upsample_plugin.data_checks import check_dataset
        for kind in ('coco', 'coco_panoptic', 'seg'):
            for split in toy_data.COCO_SPLITS:
                check_dataset(toy_data.toy_dataset_cfg(kind, split, data_root=args.out))
        print('  data_checks: all splits OK')
    print(f'done in {time.time() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
