"""Events: the landing-zone sensor and the validated, de-duplicated daily outcome events."""
