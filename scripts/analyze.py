from pathlib import Path

from synthlora.backends import make_analyzer
from synthlora.features import analyze_with_retries, load_schema
from synthlora.io import write_json, write_text
from synthlora.scripting import job

with job(snakemake):
    settings = {**snakemake.params.settings, "device": snakemake.config["analyze"]["device"]}
    schema = load_schema(snakemake.input.schema)
    analyzer = make_analyzer(settings, snakemake.input.get("manual"))
    description = Path(snakemake.input.description).read_text(encoding="utf-8")
    instruction = Path(snakemake.input.instruction).read_text(encoding="utf-8")
    source = f"the {settings['backend']} analysis of {snakemake.wildcards.character}"
    features, raw, attempts = analyze_with_retries(
        lambda attempt: analyzer.analyze(Path(snakemake.input.reference), description, instruction, schema, attempt),
        schema, settings["retries"], source)
    print(f"valid features after {attempts} attempt(s)")
    usage = getattr(analyzer, "usage", [])  # one record per API call; none for local backends
    for record in usage:
        print(f"API usage: {record}")
    write_json(snakemake.output.usage, usage)
    write_text(snakemake.output.raw, raw)
    write_json(snakemake.output.features, features)
