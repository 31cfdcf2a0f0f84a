"""The pipeline's yardstick: reference classifier, sample quality, claims."""
