"""
Learner activity as xAPI statements, from event-routing-backends straight into ClickHouse.

event-routing-backends (ERB) turns tracking-log events into xAPI statements; aspects-sink makes its
``xapi`` backend store each event ERB admits in the LMS database, in the transaction that emitted it,
and the outbox drains make ERB's statements of them and insert them in batches into Aspects' raw table
(``xapi.xapi_events_all``), with no LRS or log shipper in between (docs/decisions/0005-xapi-to-clickhouse.rst).

* :mod:`.routing` rewires ERB's tracking backend configuration (settings time and ``ready()``);
* :mod:`.backend` is the events router ERB's configuration then names;
* :mod:`.store` records events (and statements) in the statements' queue;
* :mod:`.history` imports tracking-log files with ERB's transformers;
* :mod:`.transformation` spares those transformers the work they repeat, for the length of an import.
"""
