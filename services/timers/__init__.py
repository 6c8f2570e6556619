"""Deadlines as rows: a workflow schedules a timer in its transaction; a beat job fires the due ones."""
