# Report stage: figures target, claims table and summary page (filled in by the report issue).


def report_targets():
    return []


rule figures:
    input:
        lambda wildcards: all_figures(),
