"""Kibana for the products index: the saved objects ctir-es ships (``saved_objects``, data)
and the client that imports them (``client``)."""
