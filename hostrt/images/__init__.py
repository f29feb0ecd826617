"""Images: references, the OCI content store, layer unpacking, the registry client, recipes.

The rooms meet only through digests: the store knows digests and bytes, unpack knows a
layer blob and a directory, the registry knows a remote repository and digests.
"""
