"""Settings modules applied by the Open edX plugin machinery (see ``AspectsSinkConfig.plugin_app``)."""
