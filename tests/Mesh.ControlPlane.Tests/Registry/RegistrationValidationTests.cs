using Grpc.Core;
using Mesh.ControlPlane.Registry;
using ProtoWorkloadEntry = Mesh.Xds.Registry.V1.WorkloadEntry;

namespace Mesh.ControlPlane.Tests.Registry;

/// <summary>What one registration may carry: each port is an inbound listener and each label is matched in every rebuild.</summary>
public class RegistrationValidationTests
{
    public static TheoryData<string, string> Oversized() => new()
    {
        { "ports", "workload.ports has 65 entries; the limit is 64 per registration" },
        { "ports-65535", "workload.ports has 65535 entries; the limit is 64 per registration" },
        { "labels", "workload.labels has 65 entries; the limit is 64 per registration" },
        { "label-name", "workload.labels['" + new string('k', 64) + "']: the key's name part is 64 characters; it must be 1-63 (as Kubernetes label keys)" },
        { "label-prefix", "the key's prefix is 254 characters; the limit is 253 (as Kubernetes label keys)" },
        { "label-value", "workload.labels['app'] value is 64 characters; the limit is 63 (as Kubernetes label values)" },
        { "label-empty-name", "workload.labels['example.com/']: the key's name part is 0 characters; it must be 1-63" },
        { "port-name", "workload.ports['" + new string('p', 63) + "...'] name is 64 characters; the limit is 63" },
    };

    [Theory]
    [MemberData(nameof(Oversized))]
    public void Validate_Oversized_InvalidArgumentNamingTheField(string what, string expected)
    {
        var entry = new ProtoWorkloadEntry { Address = "10.0.0.1", Ports = { ["http"] = 5001 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" };
        switch (what)
        {
            case "ports":
                Enumerable.Range(1, 64).ToList().ForEach(i => entry.Ports[$"p{i}"] = (uint)(6000 + i));
                break;
            case "ports-65535":
                entry.Ports.Clear();
                Enumerable.Range(1, 65535).ToList().ForEach(i => entry.Ports[$"p{i}"] = (uint)i);
                break;
            case "labels":
                Enumerable.Range(1, 64).ToList().ForEach(i => entry.Labels[$"l{i}"] = "v");
                break;
            case "label-name":
                entry.Labels[new string('k', 64)] = "v";
                break;
            case "label-prefix":
                entry.Labels[new string('d', 254) + "/name"] = "v";
                break;
            case "label-value":
                entry.Labels["app"] = new string('v', 64);
                break;
            case "label-empty-name":
                entry.Labels["example.com/"] = "v";
                break;
            case "port-name":
                entry.Ports[new string('p', 64)] = 5002;
                break;
        }

        var ex = Assert.Throws<RpcException>(() => WorkloadRegistryService.Validate(entry));

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_AtTheLimits_Accepted()
    {
        var entry = new ProtoWorkloadEntry { Address = "10.0.0.1", ServiceAccount = "orders" };
        Enumerable.Range(1, 64).ToList().ForEach(i => entry.Ports[$"p{i}"] = (uint)(6000 + i));
        Enumerable.Range(1, 63).ToList().ForEach(i => entry.Labels[$"l{i}"] = "v");
        entry.Labels[new string('d', 253) + "/" + new string('n', 63)] = new string('v', 63);

        var workload = WorkloadRegistryService.Validate(entry);

        Assert.Equal((64, 64), (workload.Ports.Count, workload.Labels.Count));
    }
}
