# Installed into <environment>/etc/ipython/ by `make setup` and binder/postBuild.
#
# ipykernel 7 logs a WARNING at start-up that the kernel talks to Jupyter over local TCP without
# encryption (the default transport of every Jupyter server). The kernel captures its own
# stderr, so that line lands in whichever notebook cell runs next: noise for learners, and a
# random difference for nbval. Kernel start-up messages below ERROR are not for the notebook.
c = get_config()  # noqa: F821  (provided by IPython when it loads this file)
c.IPKernelApp.log_level = "ERROR"
