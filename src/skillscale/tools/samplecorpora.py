"""Small corpora on disk in the shapes real ones have, from the embedded texts.

    skillscale sample-corpora corpora/      # then: snakemake --configfile config/studies/test-sources.yaml

  corpora/knowledge/part-0000{0,1}.parquet   columns id, title, text (Wikipedia leads, FineWeb-like)
  corpora/code/data.jsonl                    fields path, lang, content (The Stack-like: Python
                                             stdlib files, plus Markdown/Text rows a lang filter drops)
  corpora/web/<n>.txt                        one plain-text document per file

What the end-to-end test of configured sources runs on; real text, so that the mix and the
evaluation behave as on a real corpus, only smaller.
"""

from __future__ import annotations

import json
from pathlib import Path

from skillscale.data import corpora


def write(out: Path, wiki_docs: int = 1600, code_bytes: int = 900_000) -> dict:
    # deferred: pyarrow: only when writing parquet files
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    wiki = corpora.wiki_summaries(wiki_docs)
    know, web = wiki[: len(wiki) * 3 // 4], wiki[len(wiki) * 3 // 4 :]
    (out / "knowledge").mkdir(parents=True, exist_ok=True)
    half = len(know) // 2
    for i, part in enumerate((know[:half], know[half:])):
        table = pa.table(
            {
                "id": [d.id for d in part],
                "title": [d.id.split(":", 1)[-1] for d in part],
                "text": [d.text for d in part],
            }
        )
        pq.write_table(table, out / "knowledge" / f"part-{i:05d}.parquet")
    code = corpora.stdlib_files(code_bytes, seed=0)
    (out / "code").mkdir(parents=True, exist_ok=True)
    with open(out / "code" / "data.jsonl", "w") as f:
        for i, d in enumerate(code):
            f.write(json.dumps({"path": d.id, "lang": "Python", "content": d.text}) + "\n")
            if i % 5 == 0:  # other languages, which the study's lang filter must drop
                f.write(
                    json.dumps(
                        {
                            "path": f"README{i}.md",
                            "lang": "Markdown",
                            "content": f"# NOT PYTHON {i}\nThis row must be filtered out.\n",
                        }
                    )
                    + "\n"
                )
    (out / "web").mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(web):
        (out / "web" / f"{i:05d}.txt").write_text(d.text)
    return {"knowledge_docs": len(know), "code_files": len(code), "web_docs": len(web)}
