"""
Learner activity as xAPI statements, from event-routing-backends straight into ClickHouse.

event-routing-backends (ERB) turns tracking-log events into xAPI statements; aspects-sink makes its
``xapi`` backend store each statement in the LMS database, in the transaction that emitted the event,
and the outbox drains insert them in batches into Aspects' raw table (``xapi.xapi_events_all``), with
no LRS or log shipper in between (docs/decisions/0005-xapi-to-clickhouse.rst).

* :mod:`.routing` rewires ERB's tracking backend configuration (settings time and ``ready()``);
* :mod:`.backend` is the events router ERB's configuration then names;
* :mod:`.store` is the statements' queue and the raw table's rows;
* :mod:`.history` imports tracking-log files with ERB's transformers;
* :mod:`.transformation` spares those transformers the work they repeat, for the length of an import.
"""
