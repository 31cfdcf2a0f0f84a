# Experiment potts_ebm (rules are added by its issue).
register_experiment("potts_ebm", runs=lambda: [], required_columns=[])
