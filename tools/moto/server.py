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

moto's CreateFleet is mended in one place: it starts instances in their launch
template's security groups, as EC2 does (moto used the VPC's default group).

Then prints one JSON line (endpoint, region, cluster, the seeded IDs) and serves until
its standard input closes, so a test that drops the child ends it.

With `--iam-stack deploy/aws/cloudformation.yaml --audit-log FILE` the account is set up
as an operator would: the template is deployed as a CloudFormation stack (the node role,
the interruption queue and its rules, kerf's controller policy), an IAM user
`kerf-controller` gets only that policy and an `admin` user gets everything, and from
then on moto enforces IAM: every request must be signed by one of them and allowed by
its policies. Each authorization decision is appended to FILE as a JSON line
(principal, action, allowed). moto names a request's resource for few calls, and not as
IAM does (it names the role, not the instance profile, for AddRoleToInstanceProfile), so
here a statement's Resource always matches and moto decides on actions; moto evaluates
no condition keys of identity policies either. Scoping by resource and tag is the
policy's text, checked by cfn-lint and by kerf-aws's test of the policy's statements.

Usage: server.py [--cluster NAME] [--region REGION] [--k8s 1.33]
                 [--iam-stack TEMPLATE --audit-log FILE]
"""

import argparse
import logging
import datetime
import json
import socket
import sys
import threading
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


def accept_string_policy_documents():
    """CloudFormation takes a ManagedPolicy's PolicyDocument as an object or as a JSON
    string (the template's is a string, because its condition keys carry the cluster's
    name); moto's CloudFormation only takes the object. Parse the string first."""
    from moto.iam.models import ManagedPolicy

    original = ManagedPolicy.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kw):
        props = cloudformation_json.get("Properties", {})
        if isinstance(props.get("PolicyDocument"), str):
            props["PolicyDocument"] = json.loads(props["PolicyDocument"])
        return original(cls, resource_name, cloudformation_json, account_id, region_name, **kw)

    ManagedPolicy.create_from_cloudformation_json = classmethod(create)


def fleets_launch_in_their_templates_security_groups():
    """EC2 starts a fleet's instances in the security groups its launch template names
    (`SecurityGroupIds`); moto's CreateFleet reads only `GroupSet` and starts them in the
    VPC's default group instead, which would make every node look drifted from its
    EC2NodeClass. Give each of a fleet's launch specs its template's groups."""
    from moto.ec2.models.fleets import Fleet

    original = Fleet.get_launch_spec_counts

    def counts(self, weight_to_add):
        for spec in self.launch_specs:
            template = spec.launch_template_spec
            if spec.group_set or not template:
                continue
            lt = self.ec2_backend.get_launch_template(template["LaunchTemplateId"])
            data = lt.get_version(template.get("Version", "$Default")).data
            spec.group_set = list(data.get("SecurityGroupIds", []))
        return original(self, weight_to_add)

    Fleet.get_launch_spec_counts = counts


def deploy_iam_stack(client, cluster, template):
    """Deploys the template; returns the controller policy's ARN and document (as moto
    stored it, substitutions done) and the interruption queue's name."""
    accept_string_policy_documents()
    cfn = client("cloudformation")
    stack = f"kerf-{cluster}"
    with open(template) as f:
        cfn.create_stack(
            StackName=stack,
            TemplateBody=f.read(),
            Parameters=[{"ParameterKey": "ClusterName", "ParameterValue": cluster}],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
    desc = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    if desc["StackStatus"] != "CREATE_COMPLETE":
        raise SystemExit(f"stack {stack}: {desc['StackStatus']} {desc.get('StackStatusReason')}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    iam = client("iam")
    arn = outputs["ControllerPolicyArn"]
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"][
        "Document"
    ]
    if isinstance(document, str):
        document = json.loads(document)
    return arn, document, outputs["InterruptionQueueName"]


def iam_user(iam, name, policy_arn=None, inline=None):
    iam.create_user(UserName=name)
    if policy_arn:
        iam.attach_user_policy(UserName=name, PolicyArn=policy_arn)
    if inline:
        iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=json.dumps(inline))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    arn = iam.get_user(UserName=name)["User"]["Arn"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"], "arn": arn}


def enforce_iam(audit_log):
    """From here on moto authenticates and authorizes every request (see the module's
    docstring for what it decides on), and each decision goes to `audit_log`."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam import access_control

    out = open(audit_log, "a", buffering=1)
    lock = threading.Lock()

    def record(request, allowed):
        principal = getattr(request._access_key, "arn", None)
        with lock:
            out.write(json.dumps({"principal": principal, "action": request._action, "allowed": allowed}) + "\n")

    check = access_control.IAMRequestBase.check_action_permitted

    def checked(self, resource):
        try:
            check(self, resource)
        except Exception:
            record(self, False)
            raise
        record(self, True)

    access_control.IAMRequestBase.check_action_permitted = checked
    matches = access_control.IAMPolicyStatement._check_element_matches

    def element_matches(self, element, value):
        return True if element == "Resource" else matches(self, element, value)

    access_control.IAMPolicyStatement._check_element_matches = element_matches
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cluster", default="kerf-test")
    parser.add_argument("--region", default="us-west-2")
    parser.add_argument("--k8s", default="1.33")
    parser.add_argument("--iam-stack", help="a CloudFormation template to deploy, then enforce IAM")
    parser.add_argument("--audit-log", help="with --iam-stack: where authorization decisions go")
    args = parser.parse_args()
    if bool(args.iam_stack) != bool(args.audit_log):
        parser.error("--iam-stack and --audit-log go together")

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    fleets_launch_in_their_templates_security_groups()
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
    extra = {}
    if args.iam_stack:
        # The stack makes the node role, the queue and the controller policy.
        policy_arn, document, queue = deploy_iam_stack(client, args.cluster, args.iam_stack)
        extra["iam"] = {
            "policy_arn": policy_arn,
            "policy_document": document,
            "queue": queue,
            "controller": iam_user(iam, "kerf-controller", policy_arn=policy_arn),
            "admin": iam_user(
                iam,
                "admin",
                inline={
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                },
            ),
        }
    else:
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
    if args.iam_stack:
        enforce_iam(args.audit_log)

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
                **extra,
            }
        ),
        flush=True,
    )
    # Serve until the parent closes our stdin (or dies).
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
