# One image for every jobrelay entry point; each service picks its own by command:
#   API (default):     functions-framework --target=api --source=functions/main.py
#   worker:            python -m services.worker
#   dead letters:      python -m services.deadletter
#   Elastic Muscle:    python -m services.muscle          (on the pool VMs)
# All of them listen on $PORT (Cloud Run sets it; 8080 otherwise).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies in their own layer, rebuilt only when pyproject.toml changes: the runtime
# dependencies plus the `cloud` extra (Secret Manager, Cloud Trace), read from pyproject.toml.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['cloud']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The source, run from /app (PYTHONPATH) so infra/ sits where jobrelay.settings looks for it.
COPY infra/ infra/
COPY jobrelay/ jobrelay/
COPY jobs/ jobs/
COPY functions/ functions/
COPY services/ services/

# Job types: every service imports the modules JOBRELAY_JOB_MODULES names (comma separated). A team's
# own package goes into an image built FROM this one, with its own ENV (README, "Adding a job type");
# an image built from this file with the package copied in takes --build-arg JOB_MODULES=jobs,acme_jobs.
ARG JOB_MODULES=jobs
ENV JOBRELAY_JOB_MODULES=${JOB_MODULES}

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent jobrelay
USER 10001:10001

EXPOSE 8080
CMD ["functions-framework", "--target=api", "--source=functions/main.py"]
