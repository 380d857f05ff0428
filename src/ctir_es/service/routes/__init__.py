"""The HTTP routes, one module per concern: ``page`` (the web page and its files), ``health``,
``search`` (text, category and image search), ``products`` (a product, its image, similar
products) and ``categories`` (the tree, categorize, audit). ``ctir_es.service.app`` assembles them."""
