"""How the admin shows dates and times (English locale): ISO 8601 order to the second, with
the zone (UTC, TIME_ZONE), the same on every page — lists, details and filters alike.
Django's own English formats ("Dec. 2, 2026, 2:25 p.m.") drop the seconds and the zone,
which outcomes arriving hundreds a second need."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
