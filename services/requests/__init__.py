"""Residents' requests (诉求) as work orders: intake, routing, lifecycle, deadlines, feedback."""
