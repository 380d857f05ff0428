"""Kibana saved objects for the products index, as data (see ``kibana/``)."""
