from pathlib import Path

from synthlora.candidates import load_candidates, load_reference
from synthlora.io import write_json, write_text
from synthlora.report_pages import tsv_page
from synthlora.scripting import job
from synthlora.selection import (TooFewImages, contact_sheet, load_overrides, select, summary, summary_text,
                                 to_tsv, too_few_message)

with job(snakemake):
    inp, out, cfg = snakemake.input, snakemake.output, snakemake.params.select
    character = snakemake.wildcards.character
    # Before selecting: if (almost) every shot failed, say why, counted per reason (synthlora.generation).
    from synthlora.generation import TooFewGenerated, generation_report, too_few_generated

    if (problem := too_few_generated(generation_report(inp.provenance), cfg["min_count"], character)):
        print(problem)
        raise TooFewGenerated(problem)
    candidates = load_candidates(inp.plan, inp.provenance, inp.scores, inp.embeddings,
                                 inp.get("answers"), inp.get("observed"))
    reference = load_reference(inp.reference, inp.reference_embedding)
    overrides = load_overrides(inp.get("overrides"), [c["key"] for c in candidates])
    checks = None
    if "members" in inp.keys():  # a group: every member's identity must be there (synthlora.groups)
        from synthlora.groups import centroid, group_checks, member_similarities
        from synthlora.io import read_json

        members = snakemake.config["groups"][character]
        # results/<member>/scores/<key>.embedding.json: the member's selected images
        centroids = {m: centroid([read_json(p)["vector"] for p in inp.members if Path(p).parts[-3] == m])
                     for m in members}
        member_similarities(candidates, centroids)
        checks = group_checks(members)
    rows = select(candidates, cfg, None, reference, overrides, checks)
    summ = summary(rows, cfg)
    for line in summary_text(summ, character):
        print(line)
    table = to_tsv(rows)
    images = dict(zip([c["key"] for c in candidates], inp.images))
    # Below select.min_count the run stops here; the table and sheet stay beside the outputs
    # (Snakemake removes a failed job's outputs) so the user can see why.
    too_few = Path(out.table).with_name("selection.too_few.tsv"), Path(out.sheet).with_name("selection.too_few.png")
    if summ["passed"] < summ["min_count"]:
        write_text(too_few[0], table)
        contact_sheet(rows, images, too_few[1], thumb=cfg["contact_sheet_thumb"], summ=summ,
                      title=f"{character}: too few candidates passed")
        message = too_few_message(summ, character, str(too_few[0]), str(too_few[1]))
        print(message)
        raise TooFewImages(message)
    for path in too_few:
        path.unlink(missing_ok=True)
    write_text(out.table, table)
    write_json(out.summary, summ)
    write_text(out.page, tsv_page(table, f"{character}: selection of the candidates",
                                  notes=summary_text(summ)))
    contact_sheet(rows, images, out.sheet, thumb=cfg["contact_sheet_thumb"], summ=summ,
                  title=f"{character}: selection")
