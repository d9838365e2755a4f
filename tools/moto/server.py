#!/usr/bin/env python3
"""moto, seeded as an EKS cluster's AWS account, for kerf-aws's tests.

Starts `moto.server.ThreadedMotoServer` on 127.0.0.1 at a free port, seeds:

- a VPC with three subnets in three zones (different sizes, so different free-address
  counts) tagged `karpenter.sh/discovery=<cluster>`, and one untagged subnet;
- a security group tagged the same way, besides the VPC's default group;
- EKS-optimized-looking AMIs (AL2023 standard/nvidia/neuron, x86_64 and arm64, two
  releases each; Bottlerocket; AL2) registered straight in moto's EC2 backend, with
  architecture and creation dates;
- the SSM public parameters the EC2NodeClass aliases resolve through, at their real
  paths. moto refuses PutParameter under `/aws/`, so they go into its SSM backend
  directly, before the address is printed;
- an IAM role for nodes (`KarpenterNodeRole-<cluster>`) and an instance profile
  (`KarpenterNodeInstanceProfile-<cluster>`) holding it.

Then prints one JSON line (endpoint, region, cluster, the seeded IDs) and serves until
its standard input closes, so a test that drops the child ends it.

Usage: server.py [--cluster NAME] [--region REGION] [--k8s 1.33]
"""

import argparse
import logging
import datetime
import json
import socket
import sys
import time

import boto3
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models.amis import Ami
from moto.ec2.utils import random_ami_id
from moto.server import ThreadedMotoServer
from moto.ssm.models import Parameter

AL2023_RELEASES = ["v20250101", "v20250601"]
BOTTLEROCKET_RELEASES = ["1.30.0", "1.31.0"]
AL2_RELEASES = ["v20250101", "v20250601"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_ami(ec2, region, name, arch, created, tags=None):
    ami = Ami(
        ec2,
        random_ami_id(),
        name=name,
        description=name,
        owner_alias="amazon",
        public=True,
        virtualization_type="hvm",
        architecture=arch,
        creation_date=created,
        root_device_type="ebs",
        root_device_name="/dev/xvda",
        region_name=region,
        hypervisor="xen",
        tags=tags or {},
    )
    ec2.amis[ami.id] = ami
    return ami.id


def put_ssm(ssm, name, value):
    # Straight into the backend: PutParameter refuses names under /aws/.
    ssm._parameters[name].append(
        Parameter(
            account_id=DEFAULT_ACCOUNT_ID,
            name=name,
            value=value,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=time.time(),
            version=len(ssm._parameters[name]) + 1,
            data_type="aws:ec2:image",
        )
    )


def seed_images(region, k8s):
    ec2 = get_backend("ec2")[DEFAULT_ACCOUNT_ID][region]
    ssm = get_backend("ssm")[DEFAULT_ACCOUNT_ID][region]
    images = {}
    base = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    for r, release in enumerate(AL2023_RELEASES):
        created = base + datetime.timedelta(days=150 * r)
        for arch in ["x86_64", "arm64"]:
            for variant in ["standard", "nvidia", "neuron"]:
                name = f"amazon-eks-node-al2023-{arch}-{variant}-{k8s}-{release}"
                ami = register_ami(ec2, region, name, arch, created)
                images[name] = ami
                root = f"/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/{arch}/{variant}"
                put_ssm(ssm, f"{root}/{name}/image_id", ami)
                if r == len(AL2023_RELEASES) - 1:
                    put_ssm(ssm, f"{root}/recommended/image_id", ami)
    for r, release in enumerate(BOTTLEROCKET_RELEASES):
        created = base + datetime.timedelta(days=150 * r)
        for arch in ["x86_64", "arm64"]:
            for flavour in ["", "-nvidia"]:
                name = f"bottlerocket-aws-k8s-{k8s}{flavour}-{arch}-v{release}"
                ami = register_ami(ec2, region, name, arch, created)
                images[name] = ami
                root = f"/aws/service/bottlerocket/aws-k8s-{k8s}{flavour}/{arch}"
                put_ssm(ssm, f"{root}/{release}/image_id", ami)
                if r == len(BOTTLEROCKET_RELEASES) - 1:
                    put_ssm(ssm, f"{root}/latest/image_id", ami)
    for r, release in enumerate(AL2_RELEASES):
        created = base + datetime.timedelta(days=150 * r)
        for arch, suffix in [("x86_64", ""), ("arm64", "-arm64"), ("x86_64", "-gpu")]:
            name = f"amazon-eks{suffix}-node-{k8s}-{release}"
            ami = register_ami(ec2, region, name, arch, created)
            images[name] = ami
            root = f"/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2{suffix}"
            put_ssm(ssm, f"{root}/{name}/image_id", ami)
            if r == len(AL2_RELEASES) - 1:
                put_ssm(ssm, f"{root}/recommended/image_id", ami)
    # A custom image found by its tags, for `tags` AMI terms.
    images["custom"] = register_ami(
        ec2, region, "team-custom-node", "x86_64", base, tags={"team": "blue"}
    )
    return images


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cluster", default="kerf-test")
    parser.add_argument("--region", default="us-west-2")
    parser.add_argument("--k8s", default="1.33")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"

    def client(service):
        return boto3.client(
            service,
            region_name=args.region,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    ec2 = client("ec2")
    discovery = [{"Key": "karpenter.sh/discovery", "Value": args.cluster}]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {}
    # Sizes differ so free-address ordering is observable: c (/20) > b (/22) > a (/24).
    for zone, cidr in [("a", "10.0.0.0/24"), ("b", "10.0.4.0/22"), ("c", "10.0.16.0/20")]:
        az = f"{args.region}{zone}"
        sn = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]
        ec2.create_tags(
            Resources=[sn["SubnetId"]],
            Tags=discovery + [{"Key": "Name", "Value": f"{args.cluster}-private-{zone}"}],
        )
        subnets[az] = sn["SubnetId"]
    untagged = ec2.create_subnet(
        VpcId=vpc, CidrBlock="10.0.200.0/24", AvailabilityZone=f"{args.region}a"
    )["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName=f"{args.cluster}-node", Description="nodes", VpcId=vpc
    )["GroupId"]
    ec2.create_tags(Resources=[sg], Tags=discovery)

    iam = client("iam")
    role = f"KarpenterNodeRole-{args.cluster}"
    iam.create_role(
        RoleName=role,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    profile = f"KarpenterNodeInstanceProfile-{args.cluster}"
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)

    images = seed_images(args.region, args.k8s)

    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "region": args.region,
                "cluster": args.cluster,
                "k8s": args.k8s,
                "vpc": vpc,
                "subnets": subnets,
                "untagged_subnet": untagged,
                "security_group": sg,
                "role": role,
                "instance_profile": profile,
                "images": images,
            }
        ),
        flush=True,
    )
    # Serve until the parent closes our stdin (or dies).
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
