"""The weights app: DeepLab's published checkpoints by name (``zoo``; docs/model_zoo.md).

    deeplab-mobile weights                     # the table: names, networks, data, published mIoU, Params, MAdds
    deeplab-mobile weights --fetch deeplabv3_mnv2_pascal_trainaug   # download and convert now; prints the file
    deeplab-mobile weights --markdown          # the table as docs/model_zoo.md shows it

A name works wherever a model file does: ``--weights <name>``, ``weights=<name>``,
``Segmenter.from_pretrained("<name>")``, ``build_model(weights="<name>")``.
"""

from __future__ import annotations

import argparse

from .. import zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deeplab-mobile weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fetch", nargs="+", metavar="NAME", help="download and convert these now")
    parser.add_argument("--clear", nargs="+", metavar="NAME", help="remove these from the cache")
    parser.add_argument("--markdown", action="store_true", help="the table in Markdown")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in args.clear or []:
        zoo.clear(name)
        print(f"{name}: removed from {zoo.cache_dir()}")
    for name in args.fetch or []:
        print(f"{name}: {zoo.fetch(name, progress=not args.no_progress)}")
    if args.fetch or args.clear:
        return 0
    if args.markdown:
        print(zoo.markdown_table())
        return 0
    for row in zoo.list_weights():
        cached = "cached" if row["cached"] else "not downloaded"
        print(f"{row['name']}  ({cached})")
        print(f"  {row['network']}; {row['data']}; trained on {row['trained']}")
        print(f"  published: {'; '.join(row['published_miou'])}")
        print(f"  Params {row['params'] / 1e6:.2f}M, MAdds {row['madds'] / 1e9:.2f}B at 513; {row['archive']}")
    print(f"cache: {zoo.cache_dir()} (TORCH_HOME); source: {zoo.SOURCE}")
    return 0
