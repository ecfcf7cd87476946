"""Test-suite settings: hypothesis without wall-clock deadlines (shared CI machines are noisy)."""

from hypothesis import HealthCheck, settings

settings.register_profile("starlab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("starlab")
