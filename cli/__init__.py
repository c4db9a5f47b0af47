"""The gscodec command line (click): parse arguments, call the library, print."""
