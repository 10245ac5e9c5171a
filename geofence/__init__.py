"""geofence"""
