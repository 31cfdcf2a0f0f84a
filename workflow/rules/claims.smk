# Claims: the registry of published claims joined with the tables (filled in by the evaluation-kit issue).
