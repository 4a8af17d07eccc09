"""The drills: scenarios, measurements, the live view and the written report."""
