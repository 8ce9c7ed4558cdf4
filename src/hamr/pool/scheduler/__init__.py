"""Placement of jobs onto pooled devices: binpack, spread and heterogeneity-aware max_throughput."""

from hamr.pool.scheduler.request import Decision, JobRequest
from hamr.pool.scheduler.scheduler import POLICIES, Scheduler
from hamr.pool.scheduler.table import DeviceTable
from hamr.pool.scheduler.throughput import ThroughputModel

__all__ = ["POLICIES", "Decision", "DeviceTable", "JobRequest", "Scheduler", "ThroughputModel"]
