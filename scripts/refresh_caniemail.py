"""Replace newsletter/data/caniemail.json with caniemail.com's current support data.

    python scripts/refresh_caniemail.py            # the features the checks look for
    python scripts/refresh_caniemail.py --all      # every feature (about 1.3 MB)

The data is caniemail.com's (https://github.com/hteumeuleu/caniemail, MIT licence,
Copyright (c) 2019 HTeuMeuLeu); the file keeps its api/data.json shape, plus an `_about`
block naming the source, the licence and the date it was fetched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.checks.compat import DATA, DETECTED  # noqa: E402

URL = "https://www.caniemail.com/api/data.json"


def fetch(url: str, timeout: float = 60.0) -> dict:
    request = urllib.request.Request(url, headers={"User-Agent": "newsletter-refresh/1.0"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def refreshed(raw: dict, url: str, keep_all: bool) -> dict:
    """The downloaded data, checked for the fields compat.py reads, with an _about block."""
    features = raw.get("data")
    if not isinstance(features, list) or not features:
        raise ValueError("no `data` list of features: has the API changed?")
    for feature in features:
        if not {"slug", "title", "stats"} <= feature.keys():
            raise ValueError(f"feature without slug/title/stats: {str(feature)[:80]}")
    slugs = {f["slug"] for f in features}
    missing = sorted(set(DETECTED) - slugs)
    if missing:
        raise ValueError(f"features the checks need are gone: {', '.join(missing)}")
    if not keep_all:
        features = [f for f in features if f["slug"] in DETECTED]
    about = {
        "curated_subset": False,
        "note": "caniemail.com's data as fetched"
        + ("" if keep_all else ", only the features newsletter/checks/compat.py looks for"),
        "source": url,
        "project": "https://github.com/hteumeuleu/caniemail",
        "licence": "MIT",
        "copyright": "Copyright (c) 2019 HTeuMeuLeu",
        "licence_url": "https://github.com/hteumeuleu/caniemail/blob/master/LICENSE",
        "built": dt.date.today().isoformat(),
    }
    rest = {k: v for k, v in raw.items() if k not in ("_about", "data")}
    return {"_about": about, **rest, "data": sorted(features, key=lambda f: f["slug"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=URL, help=f"where to fetch from (default: {URL})")
    parser.add_argument("--output", type=Path, default=DATA, help="file to write")
    parser.add_argument("--all", action="store_true", help="keep every feature, not only ours")
    args = parser.parse_args(argv)
    try:
        data = refreshed(fetch(args.url), args.url, args.all)
    except (OSError, ValueError) as exc:
        print(f"refresh_caniemail: {args.url}: {exc}", file=sys.stderr)
        return 1
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({len(data['data'])} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
