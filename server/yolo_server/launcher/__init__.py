"""The launcher: the ``yolo-server serve`` process that owns ``tritonserver``.

It runs outside Triton: the options and argv (:mod:`.options`), the admin key and TLS (:mod:`.access`), the
tritonserver installation and process (:mod:`.installation`, :mod:`.process`), the nginx front that caps
requests (what it is: :mod:`.front`; its process: :mod:`.front_process`), the two composed in order
(:mod:`.launch`), and the supervision and canary that restart a server whose stubs died
(:mod:`.supervise`, :mod:`.canary`). What runs inside Triton's Python-backend stubs is
:mod:`yolo_server.triton`; the two never import each other.
"""
