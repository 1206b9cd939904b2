"""The alarm service: feeds the alerting core, stores what it decides, serves people's moves."""
