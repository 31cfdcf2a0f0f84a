# Experiment spatial_rgm (rules are added by its issue).
register_experiment("spatial_rgm", runs=lambda: [], required_columns=[])
