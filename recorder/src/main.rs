fn main() {
    println!("vigil-recorder");
}
