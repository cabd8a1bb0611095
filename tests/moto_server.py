"""A moto server on 127.0.0.1 so boto3 talks real HTTP in the tests (fixtures)."""
