"""What EC2 does and moto (5.2) does not, for the calls SkyREPL makes.

Python imports this module at start-up because `startMoto` puts its directory first on
PYTHONPATH: moto's server is then the unchanged program, whichever Python runs it. A moto that
cannot be patched (another layout) starts unpatched, and the tests that need the patch fail.
"""

try:
    from moto.ec2.models.amis import AmiBackend
except Exception:  # not moto's interpreter, or another moto layout: leave it as it is
    AmiBackend = None

if AmiBackend is not None and not getattr(AmiBackend.create_image, "_skyrepl", False):
    _create_image = AmiBackend.create_image

    def create_image(self, instance_id, name, description, tag_specifications):
        # EC2 tags the EBS snapshots CreateImage makes with the "snapshot" specification's tags;
        # moto raises NotImplementedError for it, which its server turns into an HTML 500.
        snapshot_tags = [
            tag
            for spec in tag_specifications
            if spec.get("ResourceType") == "snapshot"
            for tag in spec.get("Tags", [])
        ]
        others = [spec for spec in tag_specifications if spec.get("ResourceType") != "snapshot"]
        ami = _create_image(self, instance_id, name, description, others)
        for tag in snapshot_tags:
            ami.ebs_snapshot.add_tag(tag["Key"], tag["Value"])
        return ami

    create_image._skyrepl = True
    AmiBackend.create_image = create_image
