namespace Mesh.Sidecar.Tests;

public sealed class SidecarProjectTests
{
    [Fact]
    public void Assembly_IsTheMeshSidecarCommand()
    {
        Assert.Equal("mesh-sidecar", typeof(Program).Assembly.GetName().Name);
    }
}
