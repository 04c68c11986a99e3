#!/usr/bin/python3
"""A minimal CRI client (what kubelet or crictl would send) for the containerd suite.

    cri.py SOCKET runp POD_NAME LOG_DIR [RUNTIME_HANDLER]      -> prints the pod sandbox id
    cri.py SOCKET create POD_ID POD_NAME LOG_DIR NAME IMAGE [-a KEY=VALUE]... -- CMD...
                                                               -> prints the container id
    cri.py SOCKET start|rm CONTAINER_ID
    cri.py SOCKET status CONTAINER_ID                          -> "STATE EXIT_CODE"
    cri.py SOCKET exec CONTAINER_ID CMD...                     -> its stdout; exits with its status
    cri.py SOCKET stats CONTAINER_ID                           -> "WORKING_SET_BYTES CPU_NANOSECONDS"
    cri.py SOCKET update CONTAINER_ID MEMORY_BYTES CPU_SHARES
    cri.py SOCKET stop CONTAINER_ID TIMEOUT_SECONDS
    cri.py SOCKET stopp|rmp POD_ID

The message classes come from runtime_subset.proto, compiled with protoc into the directory named
by CRI_PB_DIR. A gRPC error prints its message on stderr and exits 1.
"""

import os
import sys

sys.path.insert(0, os.environ["CRI_PB_DIR"])

import grpc  # noqa: E402
import runtime_subset_pb2 as pb  # noqa: E402

SERVICE = "/runtime.v1.RuntimeService/"


def call(channel, method, request, response_type):
    stub = channel.unary_unary(
        SERVICE + method,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    return stub(request, timeout=120)


def sandbox_config(name, log_dir):
    """The pod's config; CreateContainer needs the same one again, so it is built from its name."""
    config = pb.PodSandboxConfig(log_directory=log_dir)
    config.metadata.name = name
    config.metadata.uid = f"{name}-uid"
    config.metadata.namespace = "cdirun-e2e"
    # kubelet's cgroupfs layout; cdirun nests it under its owned slice.
    config.linux.cgroup_parent = f"/kubepods/burstable/pod{name}-uid"
    # Host network: no CNI to set up, and nothing left in the host's netns list.
    config.linux.security_context.namespace_options.network = pb.NODE
    config.linux.security_context.namespace_options.pid = pb.CONTAINER
    return config


def main(argv):
    socket, verb, args = argv[1], argv[2], argv[3:]
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        if verb == "runp":
            request = pb.RunPodSandboxRequest(config=sandbox_config(args[0], args[1]))
            if len(args) > 2:
                request.runtime_handler = args[2]
            print(call(channel, "RunPodSandbox", request, pb.RunPodSandboxResponse).pod_sandbox_id)
        elif verb == "create":
            pod_id, pod_name, log_dir, name, image = args[:5]
            rest = args[5:]
            split = rest.index("--")
            options, command = rest[:split], rest[split + 1 :]
            config = pb.ContainerConfig(command=command, log_path=f"{name}.log")
            config.metadata.name = name
            config.image.image = image
            for flag, value in zip(options[::2], options[1::2]):
                if flag != "-a":
                    raise SystemExit(f"unknown option {flag}")
                key, _, val = value.partition("=")
                config.annotations[key] = val
            request = pb.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox_config(pod_name, log_dir)
            )
            print(call(channel, "CreateContainer", request, pb.CreateContainerResponse).container_id)
        elif verb in ("start", "rm"):
            method = {"start": "StartContainer", "rm": "RemoveContainer"}[verb]
            call(channel, method, pb.ContainerRequest(container_id=args[0]), pb.Empty)
        elif verb == "status":
            response = call(
                channel, "ContainerStatus", pb.ContainerRequest(container_id=args[0]), pb.ContainerStatusResponse
            )
            print(pb.ContainerState.Name(response.status.state), response.status.exit_code)
        elif verb == "exec":
            request = pb.ExecSyncRequest(container_id=args[0], cmd=args[1:], timeout=60)
            response = call(channel, "ExecSync", request, pb.ExecSyncResponse)
            sys.stdout.buffer.write(response.stdout)
            sys.stderr.buffer.write(response.stderr)
            return response.exit_code
        elif verb == "stats":
            response = call(
                channel, "ContainerStats", pb.ContainerRequest(container_id=args[0]), pb.ContainerStatsResponse
            )
            stats = response.stats
            print(stats.memory.working_set_bytes.value, stats.cpu.usage_core_nano_seconds.value)
        elif verb == "update":
            request = pb.UpdateContainerResourcesRequest(container_id=args[0])
            request.linux.memory_limit_in_bytes = int(args[1])
            request.linux.cpu_shares = int(args[2])
            call(channel, "UpdateContainerResources", request, pb.Empty)
        elif verb == "stop":
            request = pb.StopContainerRequest(container_id=args[0], timeout=int(args[1]))
            call(channel, "StopContainer", request, pb.Empty)
        elif verb in ("stopp", "rmp"):
            if verb == "stopp":
                call(channel, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=args[0]), pb.Empty)
            else:
                call(channel, "RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=args[0]), pb.Empty)
        else:
            raise SystemExit(f"unknown verb {verb}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except grpc.RpcError as err:
        print(f"cri: {err.code().name}: {err.details()}", file=sys.stderr)
        sys.exit(1)
