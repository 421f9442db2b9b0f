"""`make bench`: SharQ's throughput and latency, each relative to an empty Flask app."""
