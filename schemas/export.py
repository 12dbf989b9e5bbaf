"""Export JSON Schema files for producers written in other languages.

Run ``python -m schemas.export`` after changing a model; a unit test fails
while the committed files are out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from schemas.models import INPUT_MODELS, OUTPUT_MODELS

JSON_DIR = Path(__file__).resolve().parent / "json"


def rendered() -> dict[str, bytes]:
    """File name -> exact bytes, so the check and the export cannot disagree."""
    out: dict[str, bytes] = {}
    for name, model in {**INPUT_MODELS, **OUTPUT_MODELS}.items():
        schema = model.model_json_schema(mode="validation")
        out[f"{name}.schema.json"] = (
            orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    return out


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for fname, data in rendered().items():
        (JSON_DIR / fname).write_bytes(data)
        print(f"wrote schemas/json/{fname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
