"""Order data: the sources (``base``, ``shopify``, ``woocommerce``, ``csvfile``), the cached lookup
(``lookup``) and the order step the pipeline runs (``step``, with ``verify`` and ``answer``)."""
