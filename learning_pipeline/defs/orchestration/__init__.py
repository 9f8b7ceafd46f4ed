"""Jobs, the daily schedule and the automation sensor that span the data domains."""
