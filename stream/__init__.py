"""streamdrift's service: events in from Kafka (or files), detectors, alerts out."""

__version__ = "0.1.0"
