# ratings (samples/Mesh.Samples.Python, standard library only) as a container image. Build from the repository root:
#   docker build -f deploy/kubernetes/samples/ratings.Dockerfile -t mesh-samples-ratings .
FROM python:3.12-slim
COPY samples/Mesh.Samples.Python/ratings.py /app/ratings.py
USER 1654
ENTRYPOINT ["python3", "/app/ratings.py"]
