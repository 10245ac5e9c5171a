"""dispatcher_feed"""
