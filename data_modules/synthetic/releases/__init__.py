"""Small fake releases of each dataset in its official layout, for the adapter tests: one module per dataset with
``make_release(root, ...)``, imported by module name (``fasvlm.data_modules.synthetic.releases.<dataset>``)."""

__all__: list[str] = []
