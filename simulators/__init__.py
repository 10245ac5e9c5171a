"""A simulated field-service fleet, and a load generator, for testing and demoing FieldTrack.

``simulate(SimConfig(...))`` (runner) drives seeded technicians over real or synthetic
streets and publishes what their phones would, writing the ground truth as JSONL;
``run_load(...)`` (loadgen) saturates a broker with raw-socket MQTT. The simulator talks
to the gateway only over MQTT and HTTP, as CONTRACT.md describes. See README.md.
"""
