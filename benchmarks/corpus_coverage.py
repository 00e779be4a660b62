"""Coverage of corpus folders side by side: program families, drums, meters, tempi, keys, grooves, tokens.

    python benchmarks/corpus_coverage.py LABEL=FOLDER[:COLLECTIONS] ... [--tokens] [--sample N] [--token-dir DIR]

Each column is a corpus folder (its manifest), optionally only some collections (comma-separated, or
`-arrangements` for all but them), e.g. today's corpus against the new one:

    python benchmarks/corpus_coverage.py today=data/corpus-old new=data/corpus
    python benchmarks/corpus_coverage.py "old arr.=/tmp/old:arrangements" "new arr.=/tmp/new:arrangements" --tokens

--tokens tokenizes each piece with the default tokenizer (tokens per piece); --token-dir adds the token
totals per split of a prepared token folder (its manifest). musicmha/data/coverage.py does the counting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicmha.data.coverage import corpus_coverage, format_coverage  # noqa: E402


def parse_column(text: str) -> tuple[str, Path, set[str] | None, set[str]]:
    label, _, rest = text.partition("=")
    if not rest:
        label, rest = text, text
    folder, _, names = rest.partition(":")
    if names.startswith("-"):
        return label, Path(folder), None, set(names[1:].split(","))
    return label, Path(folder), set(names.split(",")) if names else None, set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("columns", nargs="+", help="LABEL=FOLDER[:COLLECTIONS]")
    parser.add_argument("--sample", type=int, default=None, help="at most N pieces per column (by id hash)")
    parser.add_argument("--tokens", action="store_true", help="tokenize each piece (default tokenizer)")
    parser.add_argument("--token-dir", default=None, help="a prepared token folder: print its token totals")
    args = parser.parse_args(argv)
    tokenizer = None
    if args.tokens:
        from musicmha.data.tokenizer import MusicTokenizer

        tokenizer = MusicTokenizer.from_config()
    columns = {}
    for text in args.columns:
        label, folder, collections, exclude = parse_column(text)
        columns[label] = corpus_coverage(folder, collections, exclude, args.sample, tokenizer)
    print(format_coverage(columns))
    if args.token_dir:
        from musicmha.data.manifest import read_token_manifest

        manifest = read_token_manifest(args.token_dir)
        print(f"\ntokens in {args.token_dir}: " + ", ".join(
            f"{s} {v['tokens']:,} ({v['pieces']} pieces)" for s, v in manifest["splits"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
