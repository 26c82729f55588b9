"""RQ side of the service: the job catalogue, the job functions, the worker class and its start-up."""
